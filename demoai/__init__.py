"""DemoAI: git for the AI workflow."""
__version__ = "0.1.0"
