// Filled in by the file backend (issue 4).
export interface FileBackendOptions {
  /** Directory holding lock files; created 0700 when absent. Default `./.locks`. */
  dir?: string;
}
