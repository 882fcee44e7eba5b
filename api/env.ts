// Imported before PostGraphile: without GRAPHILE_ENV it prints a notice at every
// start. Production mode unless the environment asks for development.
process.env.GRAPHILE_ENV ??= 'production';
