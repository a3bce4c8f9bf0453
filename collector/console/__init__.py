"""The console: a live event debugger, a dashboard and a profile viewer, in the browser.

``routes.mount`` puts it on the collector's app at ``/console``. It is one more reader of
the log (``follower.Follower``: one per process, fanning out to every open viewer), signed in
to with the access token (``auth``), and drawn by the plain JS, CSS and SVG of ``static/``.
"""
