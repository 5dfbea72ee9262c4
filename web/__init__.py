"""The ``web`` process: one Flask app, served by waitress, behind HTTP basic auth and a same-origin guard.

It mounts rq-dashboard at ``/rq/`` (``web.rq_dashboard_seam``); other pages are added with
``web.app.register`` and get the same rules: credentials on every route (``web.auth``), no
state change from another site (``web.same_origin``), 503 while Redis is down (``web.redis_health``).
``volfefe web`` runs it (``web.serve``).
"""
