"""The vibesdk flag server and llama.cpp serving profiles."""

# vibesdk-server is released together with vibesdk, under one version (written once, in
# vibesdk/__init__.py), and requires exactly that vibesdk (server/hatch_build.py): the
# installed vibesdk's version is this package's too.
from vibesdk import __version__ as __version__
