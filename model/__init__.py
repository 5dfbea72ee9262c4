"""What reads and scores text: the visible text of a post (``model.visible_text``), and the model.

Importing this package imports nothing heavy: torch and transformers load only with the modules
that need them.
"""
