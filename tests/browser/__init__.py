"""Browser tests: headless Chromium against the real Prefect UI."""
