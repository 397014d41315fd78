"""``python -m miakit.book``: execute the notebooks and build the book (``miakit.book.build``)."""
from miakit.book.build import main

if __name__ == "__main__":
    main()
