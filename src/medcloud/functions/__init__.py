"""Serverless entry points (AWS Lambda style).

Each builds its runtime from configuration, as a CLI command does, and calls one context's use
case; nothing in the contexts imports this package.
"""
