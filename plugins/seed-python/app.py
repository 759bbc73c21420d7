"""A handler in the style of the cloud-function WebSocket model, ported
unchanged apart from the ``import wasmgate`` line and the registration line at
the end: register answers with the client's sub-protocol, transfer echoes the
data back through a reverse-push request, cleanup answers ok. Called by the
API trigger (``/http/seed-python/...``), it answers the model's
integration-response sample, as a function of that model does."""

import json

import wasmgate


def main_handler(event, context):
    print("event: %s" % json.dumps(event))
    if "httpMethod" in event:
        # The API trigger's integration request: answer the model's sample
        # integration response.
        return {
            "isBase64Encoded": False,
            "statusCode": 200,
            "headers": {"Content-Type": "text/html", "Key": ["value1", "value2", "value3"]},
            "body": "<html><body><h1>Heading</h1><p>Paragraph.</p></body></html>",
        }
    websocket = event["websocket"]
    action = websocket["action"]
    connection_id = websocket["secConnectionID"]

    if action == "connecting":
        retmsg = {}
        retmsg["errNo"] = 0
        retmsg["errMsg"] = "ok"
        retmsg["websocket"] = {
            "action": "connecting",
            "secConnectionID": connection_id,
        }
        if "secWebSocketProtocol" in websocket:
            # Answer with the first protocol the client offered.
            protocol = websocket["secWebSocketProtocol"].split(",")[0].strip()
            retmsg["websocket"]["secWebSocketProtocol"] = protocol
        return retmsg

    if action == "data send":
        retmsg = {
            "websocket": {
                "action": "data send",
                "secConnectionID": connection_id,
                "dataType": websocket["dataType"],
                "data": websocket["data"],
            }
        }
        send(retmsg)
        return "send success"

    if action == "closing":
        return {"errNo": 0, "errMsg": "ok"}

    return {"errNo": 1, "errMsg": "unknown action %s" % action}


def send(reqbody):
    # The original posts this body to the reverse-push address; the route
    # host call takes the same request.
    wasmgate.route(reqbody)


WitWorld = wasmgate.serve(main_handler)
