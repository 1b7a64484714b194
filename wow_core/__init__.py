"""wow: wrong-over-wrong preference elicitation and alignment of LLMs (Yao et al., arXiv 2410.11055).

`wow_core` is the science: pure Python, no Prefect, callable from a notebook.
"""
__version__ = "0.1.0"
