"""The web server: REST API and Gradio page on one FastAPI app, one model in memory."""
