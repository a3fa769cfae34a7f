"""ShapesWorld: the seeded picture world a miniature VisionLLM v2 trains on (docs/shapesworld.md)."""
