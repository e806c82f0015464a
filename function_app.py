"""The Azure Functions app: registers one blueprint per concern, nothing else."""
import azure.functions as func

from functions import api, commit, ingest, meter, replicate, restore, retention, scrub, sweep

app = func.FunctionApp()
for blueprint in (ingest.bp, commit.bp, replicate.bp, restore.bp, meter.bp, scrub.bp, sweep.bp, retention.bp, api.bp):
    app.register_functions(blueprint)
