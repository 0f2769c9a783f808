"""The code of the page *Build a Grafana dashboard for a job queue*
(``docs/observability/grafana.md``): the panels in Python and the dashboard JSON they write.
"""
