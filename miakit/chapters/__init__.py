"""One module per chapter of the book (and the overview, budget and feasibility that loop over them)."""
