"""Instagram scraper (see issue 4); the package only exists so far."""
