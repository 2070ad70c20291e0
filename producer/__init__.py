"""The producer daemon: watches the input folder and enqueues comment files as chunks.

It must stay free of torch and transformers: its image is the slim one.
"""
