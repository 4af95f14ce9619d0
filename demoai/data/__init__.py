"""Sample data shipped with the package for the main job (``demoai demo``)."""
