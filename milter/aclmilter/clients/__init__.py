"""Protocol clients: sans-I/O codecs plus thin transports with deadlines."""
