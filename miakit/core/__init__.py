"""Settings, data, the run store, seeding and progress bars: what every layer uses."""
