"""TF Serving's REST JSON (util/json_tensor.cc semantics), one job per module:

- `encoding`: Content-Encoding (gzip, deflate) undone with a cap on the inflated size;
- `text`: JSON text in and out: UTF-8 only, the nesting-depth scan, loads and dumps;
- `values`: JSON values of tensors: `{"b64": ...}` leaves, nesting, renderings for errors;
- `request`: a predict request body → numpy inputs checked against the signature (server side);
- `fast`: the dense integer array read without json.loads (the common large request);
- `response`: numpy outputs → a predict answer (server side);
- `client`: predict requests out and predict answers in (the client, the gateway, the loop).
"""
