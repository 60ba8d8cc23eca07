"""Images: the files a storage agent holds and serves, and locating holders across storage racks."""
