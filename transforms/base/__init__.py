"""The base layer: exceptions, the optional-extra guard and value parsers every layer uses."""
