"""Pure rules of the flag server: diffs, changes to a document, what "good" means. No I/O."""
