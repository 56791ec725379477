"""One router per resource. Each HTML page route has a JSON twin under /api/ in the same
router, both calling the same page-data function."""
