"""HTTP resources: plain classes with ``on_<method>`` responders and a ``permissions`` table per method."""
