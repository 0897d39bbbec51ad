"""The `lesson` command: list, run and test the lessons of this repository.

It is the only place that knows about async modes and monkey patching, so the
lesson apps stay plain Flask-SocketIO code.
"""
