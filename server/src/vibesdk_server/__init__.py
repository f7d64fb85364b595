"""The vibesdk flag server and llama.cpp serving profiles."""

__version__ = "0.1.0"
