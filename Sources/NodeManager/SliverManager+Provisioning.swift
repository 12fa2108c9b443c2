extension SliverManager {
    /// Remembers which initscript ran for the sliver's current boot (nil: none is installed).
    /// Written only when it changes, so a reconcile that runs nothing rewrites no record.
    func noteInitscript(_ name: String, _ run: InitscriptRun?) throws(NodeError) {
        var record = try self.record(name)
        guard record.initscript != run else { return }
        record.initscript = run
        try persist(record)
    }
}
