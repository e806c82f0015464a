"""A small function app for funchost's tests: one function per trigger kind, bindings naming app settings."""
import logging
import os

import azure.functions as func
from azure.storage.queue import QueueClient

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="hello/{name?}", methods=["GET"])
def hello(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"hello {req.route_params.get('name', 'world')}")


@app.queue_trigger(arg_name="msg", queue_name="%SAMPLE_QUEUE%", connection="Storage")
def echo(msg: func.QueueMessage) -> None:
    # Copies each message to SAMPLE_ECHO_QUEUE, so that a test outside this process sees that it ran.
    out = QueueClient.from_connection_string(os.environ["AzureWebJobsStorage"], os.environ["SAMPLE_ECHO_QUEUE"])
    out.send_message(msg.get_body().decode())


@app.timer_trigger(arg_name="timer", schedule="%SAMPLE_SCHEDULE%")
def tick(timer: func.TimerRequest) -> None:
    logging.info("tick (past due: %s)", timer.past_due)
