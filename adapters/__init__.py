"""One thin adapter per detector source, all behind ``adapters.base.Detector``."""
