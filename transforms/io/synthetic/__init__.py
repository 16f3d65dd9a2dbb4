"""The built-in synthetic source: seeded generators of inputs and the Beam reads over them."""
