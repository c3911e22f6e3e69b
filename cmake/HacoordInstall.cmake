# Install rules: the library (find_package(hacoord) -> hacoord::hacoord, and pkg-config), the binary.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# hacoord::hacoord = the election Node; hacoord::mesh = the peer mesh (Mesh); hacoord::manager = the
# whole daemon (Manager: Node + mesh + VIP + health + HTTP), which also needs libnl.
set(HACOORD_LIBS hacoord_core hacoord_election hacoord_mesh_logic hacoord_mesh_tls hacoord_nats hacoord_node
  hacoord_mesh hacoord_vip hacoord_health hacoord_manager)
set_target_properties(hacoord_lib PROPERTIES EXPORT_NAME hacoord)
set_target_properties(hacoord_mesh PROPERTIES EXPORT_NAME mesh)
set_target_properties(hacoord_manager PROPERTIES EXPORT_NAME manager)
install(TARGETS ${HACOORD_LIBS} hacoord_lib EXPORT hacoordTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS hacoord RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY include/hacoord DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT hacoordTargets NAMESPACE hacoord:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/hacoord)
configure_package_config_file(cmake/hacoordConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/hacoordConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/hacoord)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/hacoordConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/hacoordConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/hacoordConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/hacoord)
# Relocatable: the prefix is found from the .pc file's own place, so `cmake --install --prefix`
# and DESTDIR packages work.
file(RELATIVE_PATH HACOORD_PC_TO_PREFIX "/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/")
foreach(pc hacoord hacoord-mesh hacoord-manager)
  configure_file(cmake/${pc}.pc.in ${CMAKE_CURRENT_BINARY_DIR}/${pc}.pc @ONLY)
  install(FILES ${CMAKE_CURRENT_BINARY_DIR}/${pc}.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endforeach()
