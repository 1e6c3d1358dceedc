"""Apache Beam pipelines that turn raw event files into the entity graph and its snapshot."""
