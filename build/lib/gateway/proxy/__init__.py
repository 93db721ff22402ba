"""The chat service (the request path): normalize a chat's content and images, put memory into it when
asked, forward it to the model servers, relay the answer, and record the exchange in the journal."""
