// The pipeline's view of a model cut into segments, by concern: segmentPlan.ts cuts the graph by dataflow,
// segmentGraph.ts builds each segment's runnable model and its calibration variant, calibrationSums.ts
// accumulates the calibration outputs into Hessians.

export * from './segmentPlan';
export * from './segmentGraph';
export * from './calibrationSums';
