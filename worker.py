"""``python worker.py``: run the hub worker (same as ``hub worker``)."""

from hub.engine.worker import main

if __name__ == "__main__":
    main()
