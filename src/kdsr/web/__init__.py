"""The local web page of ``kdsr serve`` (the ``web`` extra: Gradio)."""
