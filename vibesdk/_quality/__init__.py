"""Cheap, pure checks on a model's answer (empty, looping, broken code, ...)."""
