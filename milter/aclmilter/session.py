"""Sans-I/O session: milter callbacks in, engine runs, responses and EOM edits out.

The pymilter glue (service/) and the dry run (`aclmilter test`) both drive this class, so the
dry run runs exactly what the service runs. Nothing here imports pymilter.
"""
