"""The radiologist's review page: static HTML, CSS and JavaScript in ``static/``, served at /ui."""
