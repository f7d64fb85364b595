"""The HTTP surface: FastAPI app, auth middleware, SSE hub and the routes."""
