"""Application services: plain Python, one module per stage of the loop or lane.

Each composes core, policy, tools and io through one per-process ``Runtime`` (adapters built
once, rule files read once). No Prefect task lives here: ``tasks/steps`` declares the tasks,
each a few lines calling a service.
"""
