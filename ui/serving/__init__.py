"""How the server serves: gunicorn's asyncio worker in front of the Falcon app.

Connections, slow clients and open event streams live on each worker's event loop, where they cost memory; the
Falcon app (its database work and templates) runs in a small thread pool only once a request has fully arrived.
See :mod:`.bridge` (requests), :mod:`.hub` (event streams), :mod:`.worker` (the gunicorn worker).
"""
