"""Faces over time: the tracker that gives each face an id across frames, each track's best
picture and the events of a face appearing and leaving (pure logic, tested with plain inputs)."""
