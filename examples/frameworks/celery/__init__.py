"""The code of the page *Run Celery in production with a Redis broker*
(``docs/frameworks/celery.md``): the settings module and the application that uses them.
"""
