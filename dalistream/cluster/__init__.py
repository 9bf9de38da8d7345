"""The cluster mode on Ray: a coordinator places cameras on workers and moves them when workers die or return."""
