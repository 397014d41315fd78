"""Building the book: execution, glue, plots, the manifest, MathJax, the Colab cell."""
