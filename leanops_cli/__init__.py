"""The ``leanops`` command line: a thin typer front end over the flows and the leanops library.

It may import Prefect and the flows, so it lives beside the ``leanops`` library package (which never
imports Prefect), not inside it. Every command runs a flow, a deployment or a library function; none
holds lifecycle logic of its own.
"""
