"""gunicorn's settings for one backend of this lesson; copy them for your own site.

    cd lessons/06_deploy && gunicorn -c gunicorn.conf.py

`./lesson run 06` starts two or more such backends, each with this file, and puts
nginx in front; it gives each one its port, its worker class and the Redis URL on
the command line and in the environment (command-line options win over this file).
"""

# The app factory, called once in the worker; async_mode must match worker_class.
wsgi_app = "app:create_app(async_mode='gevent')"

# Loopback only: nginx is the only client a backend should have.
bind = "127.0.0.1:8001"

# ONE worker per gunicorn process. A Socket.IO session lives in the memory of the
# worker that opened it; with several workers the kernel hands each new connection
# to any of them, and a long-polling request that lands on another worker gets
# "400 Invalid session" (README, trap 1). Scale with more processes behind nginx.
workers = 1

# gevent: greenlets, thousands of open connections in one worker (recommended).
worker_class = "gevent"
worker_connections = 1000
# For threading mode instead: worker_class = "gthread", threads = 100, and
# wsgi_app = "app:create_app(async_mode='threading')": every open connection holds a thread.
threads = 100

# A WebSocket or a long-poll never finishes by itself: on SIGTERM, give the open
# connections this long, then close them (the clients reconnect elsewhere).
graceful_timeout = 5
# A worker silent for this long is killed and replaced by the master.
timeout = 30

# Logs on stderr; warnings and errors only (the access log would repeat nginx's).
errorlog = "-"
loglevel = "warning"
