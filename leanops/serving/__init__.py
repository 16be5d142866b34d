"""The online endpoint's logic: what the web front end (``serving/``) calls. Never imports prefect.

- ``requests``:   a request body -> rows checked against the spec's contract (``InvalidRequest``: 422)
- ``models``:     ``ServedModel`` (one loaded version) and ``ModelCache`` (the versions being served)
- ``reloading``:  ``AliasFollower``: reloads a moved alias in the background and swaps it atomically
- ``batching``:   ``MicroBatcher``: requests that arrive while a prediction runs are scored together
- ``extensions``: the seams for canary / shadow routing (``Router``) and the prediction log (``PredictionSink``)
- ``metrics``:    the Prometheus metrics
- ``service``:    ``PredictionService``: one prediction request end to end
"""
