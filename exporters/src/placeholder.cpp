// exporters: filled in by the exporters slice
