"""What reads and scores text: the visible text of a post (``visible_text``, ``markup``), the classifier
(``classifier``: loading, ``labels``, ``windows`` for long texts, batching), the process's warm instance
(``warm``), and how random-weight models are marked (``model_marks``).

Importing this package imports nothing heavy: torch and transformers load only with the modules
that need them. It imports nothing from ``jobs`` or ``workers``.
"""
