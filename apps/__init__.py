"""The work that runs on compute nodes: plain functions of JSON-able inputs and a working directory.

Apps know nothing of events, the state machine or the database; they return JSON-able dicts.
"""
