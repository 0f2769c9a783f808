"""The incidents lab (labs/incidents_lab.py): its stack, fleet processes, traffic and scenarios."""
